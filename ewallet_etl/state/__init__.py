"""What the pipelines remember between runs: the batch checkpoint and the warehouse's own mark,
the binlog positions, the version scheme that feeds a CDC replica."""
