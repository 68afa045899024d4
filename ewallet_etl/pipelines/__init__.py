"""The jobs: batch ELT, change-event replay, binlog CDC, reconciliation, and the write-up's flat
functions. Each builds its source connection and warehouse once and passes them down; none
imports the command line."""
