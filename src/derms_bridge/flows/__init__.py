"""One module per flow: the reference's numbered steps in Python."""
