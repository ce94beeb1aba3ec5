"""Building and running the compose stack where no image registry or package index is reachable."""
