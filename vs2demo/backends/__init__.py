"""How text is generated from sampled frames and a prompt. Each backend loads once and streams the
model's answer with p("1".."5") per step; nothing else in the project knows which one runs."""
