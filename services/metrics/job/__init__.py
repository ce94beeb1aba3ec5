"""The metrics job: lake -> per-variant sufficient statistics (pure transforms, thin IO edges)."""
