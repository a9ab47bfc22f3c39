"""What a finished run is turned into: plots, the HTML report, run comparison, exported models."""
