"""HTTP API of the exposure service: one router per resource."""
