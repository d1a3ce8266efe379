"""Real data: manifests, image loading, real sources, the prepare stage, the classes.json reader."""
