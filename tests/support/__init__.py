"""Helpers shared by the test suites (tests/ is on pytest's pythonpath, the repository
root is not: the library is imported only as the installed `mmsearch.*`)."""
