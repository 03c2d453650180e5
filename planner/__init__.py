"""The Merging Planner (paper §3.2-3.3): a VGAE over the activated subgraph whose Beta
decoder gives one merge coefficient per expert, trained with REINFORCE."""
