"""The search over kernels: the tree and MCTS, baseline strategies, selection, memory."""
