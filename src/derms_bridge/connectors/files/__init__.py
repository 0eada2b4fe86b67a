"""CPMCS's file stores: FTP/FTPS, SFTP, OCI and S3-compatible object storage, a local folder."""
