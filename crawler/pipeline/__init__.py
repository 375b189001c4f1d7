"""The one orchestrator that knows the stage order, its worker processes and group commit."""
