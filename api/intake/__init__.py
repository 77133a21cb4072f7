"""Where audio arrives: multipart streaming, URL download, staging and probing of the file."""
