"""aiohttp signaling server: rooms, the MLS delivery service, WebRTC signaling."""
