"""Assignment service: experiment registry and sticky hash-based assignment."""
