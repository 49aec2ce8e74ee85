// The install wizard (being written).

export {};
