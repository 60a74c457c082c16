// Every message the payments sample shows to a client or an operator, in one place.

export const accountNotFound = (id: string) => `Account "${id}" not found`;
export const accountExists = (id: string) => `Account "${id}" already exists`;
export const insufficientFunds = (id: string, balance: number, amount: number) =>
  `Account "${id}" has ${balance} cents, which is not enough to debit ${amount} cents`;
export const sameAccountTransfer = () => 'from and to must be different accounts';
export const zeroAdjustment = () => 'amount must not be 0';
export const fencedWrite = (accountId: string) =>
  `Write to account "${accountId}" refused: the lock was lost to a newer holder before the write; nothing was changed, try again`;
export const accountVanished = (accountId: string) => `Account "${accountId}" disappeared while a payment was being applied`;
export const paymentNotFound = (id: string) => `Payment "${id}" not found`;
export const webhookEventReused = (eventId: string) =>
  `Event "${eventId}" was delivered before with another account or amount; it was not applied again`;
export const webhookEventInFlight = (eventId: string) => `Event "${eventId}" is still being applied by another delivery; retry later`;
