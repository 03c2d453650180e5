"""Reward environments for REINFORCE: synthetic (known optimum) and real (generate + score)."""
