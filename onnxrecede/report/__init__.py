"""What prune and inspect return, their text formatting, and importance plots."""
