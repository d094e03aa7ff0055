"""A new question without Python: ``biaslab study FILE.yaml``.

``spec.py`` is the file's schema (tasks x models x training settings x seeds, measures, optional
claims) and its validation before anything trains; ``experiment.py`` the ``Study`` experiment
that plans, trains (one stack per task x model) and measures the grid through the lab's
executor and store; ``claims.py`` turns the file's claims into registered claims decided by
``experiments.rules``; ``report.py`` writes the study's page (each measure against each axis).
"""
