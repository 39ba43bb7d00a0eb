"""Privacy audits: membership-inference attacks against trained models and their metrics."""
