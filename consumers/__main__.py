from consumers.process import main

main()
