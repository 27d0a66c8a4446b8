"""Benchmark runs: a Rally task against a deployment, with the system's own resource use.

* `model`: what a run is made of (TaskRun, Iteration, Sample), shared by every part;
* `store`: the runs in benchbed's database (SQLite or PostgreSQL);
* `runner`: runs the real `rally` against a deployment, in a Rally environment of its own;
* `sampler`: CPU-seconds and resident memory per service of every server, while it runs;
* `report`: one self-contained HTML page (and JSON) of a run on one time axis;
* `compare`: two runs side by side, with a verdict a CI pipeline can act on;
* `rally_platform`: benchbed as a Rally environment platform (`benchbed@openstack`).
"""
