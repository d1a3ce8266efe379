"""What every part of the library shares: atomic writes and folders, errors, seeding, device choice,
checkpoints, resumable scratch folders, timings, the path annotations of stage functions."""
