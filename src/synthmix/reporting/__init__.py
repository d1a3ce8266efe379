"""Results people read: the summary (``summary``), metrics/REPORT.md (``report``), contact sheets (``contact``)."""
