"""Generated code of the jobwire.v1 contract (see proto/jobwire/v1)."""
