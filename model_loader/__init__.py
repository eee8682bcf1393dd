"""Loading cloudfill SavedModels: the card, the staging, the Beam handlers."""
