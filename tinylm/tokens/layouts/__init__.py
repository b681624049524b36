"""The layouts chat data is downloaded in, read into one form: a conversation is a list of messages with a
`role` (system, user, assistant, tool) and a text `content`, an assistant's optionally with `reasoning_content`
and `tool_calls`, and `trained: False` where the file keeps it out of the loss; a preference pair is two
conversations that share every turn but their replies."""
