from mim_o365.cli import main

main()
