"""Image generators: the backend protocol and registry (``base``), the offline class-conditional
DDPM (``ddpm``, trained by ``ddpm_training``), Stable Diffusion 1.x/2.x/XL (``stable_diffusion``)
and its prompt templates (``prompts``). Import the module you need; nothing is re-exported here,
so a stage imports only what it uses."""
