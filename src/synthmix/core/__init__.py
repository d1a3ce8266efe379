"""What every stage shares: atomic writes and folders, errors, seeding, device choice, the stage runner."""
