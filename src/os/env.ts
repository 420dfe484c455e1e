/** The process environment as a command sees it: injected, so that tests give their own. */
export type Env = Readonly<Record<string, string | undefined>>;
