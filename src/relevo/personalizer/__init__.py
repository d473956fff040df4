"""Azure Personalizer v1.0-compatible ranking on relevo bandits."""
