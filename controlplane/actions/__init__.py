"""Actions: their lifecycle and audit trail, and the plans the control plane carries out."""
