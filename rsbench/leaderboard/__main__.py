"""``python -m rsbench.leaderboard``."""

from rsbench.leaderboard import main

main()
