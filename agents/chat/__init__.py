"""The chat loop: a conversation that refines a prompt turn by turn and generates each time."""
