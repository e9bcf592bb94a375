"""Flow 3, approved time and expenses → ERP, in parts: ``intake`` (poller, webhook → queue), ``snapshot``
(per-batch bulk reads and caches), ``enrich`` (mapping and master data), ``validate`` (project, task,
period, billed), ``plan`` (post / correct / reverse), ``post`` (the batch), ``milestones``. Entry points:
``mutations.time_posting``."""
