// The official openai Node SDK against the gateway: prints what it received as JSON.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "x", maxRetries: 0 });
const messages = [{ role: "user", content: "hi there" }];
const out = {};

const reply = await client.chat.completions.create({ model: "echo", messages });
out.text = reply.choices[0].message.content;
out.usage = reply.usage;

const stream = await client.chat.completions.create({
  model: process.env.STREAM_MODEL, messages, stream: true, stream_options: { include_usage: true },
});
out.streamed = "";
for await (const chunk of stream) {
  if (chunk.choices.length) out.streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) out.streamUsage = chunk.usage;
}

try {
  await client.chat.completions.create({ model: "echo", messages: [] });
} catch (err) {
  out.error = { name: err.constructor.name, status: err.status, param: err.param };
}
console.log(JSON.stringify(out));
