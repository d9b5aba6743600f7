"""End-to-end tests: whole labs and the README's main job, through the real commands."""
