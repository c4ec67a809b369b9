"""aiortc integration: SFrame per RTCRtpSender/RTCRtpReceiver, call peers, the bot."""
