"""One module per command family; each handler takes (args, config) and returns the exit
code."""
