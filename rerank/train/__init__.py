"""Training of the listwise scorer (the `train` extra; never imported at serve time)."""
