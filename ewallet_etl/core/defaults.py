"""Defaults a command's flags share with the pipeline they call, kept out of the pipelines so
that parsing the flags (`--help`) loads none of the data libraries the pipelines import."""

DEFAULT_BATCH_SIZE = 20_000  # change events per reduce + bulk insert (cdc replay --batch-size)
