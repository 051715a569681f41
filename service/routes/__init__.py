"""One router per resource: thin HTTP shells over the scoring core (``service.scoring``)."""
