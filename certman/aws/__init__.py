"""AWS adapters: KMS key wrapper, S3 archive store, ACM deployer and sync (boto3 stays here)."""
