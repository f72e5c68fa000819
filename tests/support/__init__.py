"""What tests share and never collect: tiny fixtures on disk, helpers, fake runs, the tiny suite."""
