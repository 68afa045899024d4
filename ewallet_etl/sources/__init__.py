"""The sources, one module each: MySQL/MariaDB (connections, chunked Arrow reads, the id
lookups) and its binlog (the reader, the decoder). Sources never import the warehouse."""
