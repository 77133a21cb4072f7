"""OpenAI's audio API over the queue: model ids, the request form, answers and error bodies."""
