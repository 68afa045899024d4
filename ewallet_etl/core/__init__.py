"""Pure rules: no I/O, no clock, nothing of ours outside this package (checked by the import
contracts in pyproject.toml). The watermark window, the transforms and value rules, change
events and their reduction, version schemes, the binlog's positions and statements."""
