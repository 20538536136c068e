"""Prices, job reports and output comparison: what a job cost here against SageMaker."""
