"""Axis names: x, y, z are array axes 0, 1, 2 of a volume as read (the TauFactor / PoreSpy convention)."""

AXES = "xyz"
