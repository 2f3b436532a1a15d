"""Built-in fedbench plugins; each module registers itself through the same hooks as a third-party package."""
