"""What training writes and the service reads: the tokenizer, the word index files, the metadata
schema, and the one function that turns a model's metadata into its tokenizer.

Free of TensorFlow (a test checks it): the service and its Docker image import this package and
never ``training``.
"""
