"""End-to-end generation: selection → planner → exact merge → images, recipe and trace."""
