package funnel

// AckBody is the whole body of the receiver's 200 answer, and the only answer that
// acknowledges an event: Funnel's webhook walkthrough asks for status 200 and this text,
// so a sender that gets anything else (another status, another body, no answer within
// 5 s) retries.
const AckBody = "Funnel Event Received"
