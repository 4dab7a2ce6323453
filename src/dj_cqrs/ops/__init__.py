"""Logic of the operator tools, as plain functions that return reports; commands only print."""
